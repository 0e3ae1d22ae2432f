"""DAQ nodes: reaching one (``connection``), what daqflow does there (``files``), and the
periodic check of its data routers and ECC server processes (``checks``)."""
