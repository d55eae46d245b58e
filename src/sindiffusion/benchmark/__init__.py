"""The one-command benchmark against the published samples (``sindiffusion benchmark``,
``benchmark-merge``, ``benchmark-compare``): arms over a folder of images, one table with the
published baselines, plots and contact sheets. The research tools are :mod:`sindiffusion.studies`."""
