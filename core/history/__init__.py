"""The history of every change to customers, addresses and loyalty records.

PostgreSQL writes it (:mod:`core.history_triggers`); this package says who
wrote each change (:mod:`.context`), reads a customer's history and personal
data (:mod:`.selectors`), and erases a person or prunes old events
(:mod:`.services`).
"""
