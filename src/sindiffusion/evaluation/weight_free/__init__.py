"""Weight-free metrics, one module each; every module registers its function in
:data:`sindiffusion.evaluation.registry.METRICS` (adding a metric = adding a module here and its test)."""
