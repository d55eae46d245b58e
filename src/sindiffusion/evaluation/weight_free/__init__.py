"""Weight-free metrics, one module each; every module registers a
:class:`~sindiffusion.evaluation.registry.Metric` in :data:`~sindiffusion.evaluation.registry.METRICS`
(adding a metric = adding a module here and its test)."""
