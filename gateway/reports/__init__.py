"""One-click reports (一键上报) by grid workers and residents, and the supervisor's check (核查). Does I/O.

- :mod:`~gateway.reports.checks`: the stored report of a ticket and where its check stands (the ticket service
  asks it before a rating);
- :mod:`~gateway.reports.store`: a report becomes a ticket through the dispatch service; tracking by token;
  the check's pass/fail; what a resident may see;
- :mod:`~gateway.reports.public`: the residents' pages (no account: a QR code per building, rate-limited per
  address, a tracking link with the rating form), plain server-rendered HTML;
- :mod:`~gateway.reports.api`: the REST routes (categories, staff reports, checks) under ``/api/v1``;
- :mod:`~gateway.reports.qrsheet`: ``gridtwin qr-sheet``, a printable sheet of one QR code per building.

The categories and the check's rules are pure, in :mod:`twin.tickets.reports`.
"""
