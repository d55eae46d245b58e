"""One module per edit kind; each registers its :class:`~sindiffusion.applications.base.Application`.

Adding a kind is adding a module here (options dataclass + application class) and its test:
the config validation, the one-off command, the manipulate stage and the docs table follow.
"""
