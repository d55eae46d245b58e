"""Metrics computed with pretrained networks, one module each; every module registers a
:class:`~sindiffusion.evaluation.registry.Metric` that declares the checkpoints it needs
(adding one = adding a module here and its test; a new checkpoint file also needs its entry in
:data:`sindiffusion.evaluation.weights.WEIGHTS`)."""
