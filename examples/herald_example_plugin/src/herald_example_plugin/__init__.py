"""An example Herald plugin: job kinds over a user's uploads (``herald_example_plugin.jobs``).

Herald imports the modules ``HERALD_JOB_MODULES`` names; this package registers
``checksum_uploads`` and ``word_count`` when ``herald_example_plugin.jobs`` is imported.
"""
