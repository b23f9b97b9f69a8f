"""Points: the commands (``commands``), the reads (``queries``) and the expiry job (``expiry``)."""
