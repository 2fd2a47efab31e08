"""Protocol implementations (one per file); registered by the plugins in ``plugins/``."""
