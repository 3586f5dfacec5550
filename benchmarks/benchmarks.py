"""asv-style benchmarks (airspeed velocity conventions: ``setup`` + ``time_*``/``track_*``).

Run them with asv, or all at once, interleaved and compared, with
``python -m fastopt bench``.  The cases themselves live in
``fastopt.bench.cases`` so that both runners time exactly the same steps.
"""
import fastopt
from fastopt.bench import cases, roofline


class OptimizerStep:
    """One optimizer step per rule, shape and implementation (float32)."""

    params = (list(cases.CONFIGS), list(cases.SHAPES), list(cases.IMPLEMENTATIONS))
    param_names = ["rule", "shape", "implementation"]
    timeout = 300

    def setup(self, rule, shape, implementation):
        self.step = cases.build(implementation, rule, cases.SHAPES[shape])
        if self.step is None:
            raise NotImplementedError(f"{implementation} has no {rule}")  # asv skips the case
        self.step()  # allocate state, fault pages in

    def time_step(self, rule, shape, implementation):
        self.step()


class StorageStep:
    """One step of each rule of ``cases.STORAGE_RULES`` in each storage type (params/state), per shape
    and implementation that offers it."""

    params = (list(cases.STORAGE_RULES), list(cases.STORAGES), list(cases.SHAPES), list(cases.STORAGE_IMPLEMENTATIONS))
    param_names = ["rule", "storage", "shape", "implementation"]
    timeout = 300

    def setup(self, rule, storage, shape, implementation):
        self.step = cases.build(implementation, rule, cases.SHAPES[shape], storage=storage)
        if self.step is None:
            raise NotImplementedError(f"{implementation} has no {rule} in {storage}")
        self.step()

    def time_step(self, rule, storage, shape, implementation):
        self.step()


class Bandwidth:
    """The in-place axpy bandwidth the roofline is drawn from."""

    unit = "GB/s"

    def track_axpy_bandwidth(self):
        return roofline.measure_bandwidth(fastopt.get_num_threads())
