"""The ``textscd`` command: one module per subcommand group, each calling the library function the
notebooks and tests call. Library modules are imported inside the handlers, so ``textscd --help`` starts
without importing torch.
"""
