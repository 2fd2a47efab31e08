"""The built-in CLI commands, each a plugin command like a third party's (``configure(parser)`` + ``run(args)``),
registered by :mod:`dinobench.plugins.commands`; :mod:`dinobench.cli` is only ``main()``. A command's module is
imported when that command is used, so ``dinobench list`` stays fast."""
