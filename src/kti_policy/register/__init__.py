"""The obligations register (CONTRACT section 8): cases and deletion tasks opened in
the transaction of the event that caused them (``ledger``), the deadlines' rules (``rules``), reads
and CSV (``query``), and the reminder scheduler the delivery worker runs (``scheduler``).

It knows the subscriptions only as the store's ``Subscriber`` (their ``holds`` read when present).

May import: the root base modules and every package up to ``store``.
"""
