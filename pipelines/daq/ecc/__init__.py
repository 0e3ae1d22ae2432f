"""The ECC servers: their state machine (``states``), the XML they take (``payloads``),
the SOAP client (``client``), and driving one transition to its confirmed end (``drive``)."""
