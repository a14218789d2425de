"""What is known about a subject: the event types, the fold of events into facts,
dated facts (``SubjectFacts``, ``fold_events``). No database, no policy.

It sits below ``policy`` because the language's fields (``policy.fields``) name the facts a
condition may test (issue 16 proposed it above ``decide``; the imports decide the order).

May import: the root base modules (``kti_policy.errors``, ``kti_policy.config``).
"""
