"""The nightly minimisation audit: proves every night that what left matches what the notice allows.

Modules (nothing heavy is imported here, so the DAG file parses fast):

  findings     Finding (kind, severity, vendor, feed, plain-language title and advice, PII-free facts)
  context      AuditContext: register, notice, ledger, shop, keys, the night audited, where reports go
  tables       the audit's own ledger tables (removal lists it sent, source columns it has seen)
  deliveries   re-check the night's deliveries against today's register and notice; read the vendor's copy
               back through the transports and compare it with the recorded checksum and manifest
  schema       source-schema drift: new columns in shop tables that feeds read, with a personal-data guess
  piiguess     the guess itself: column-name patterns and value sampling (counts only, never values)
  register     register drift: feeds, fields, vendors or purposes the notice no longer declares
  consent      consent drift: people a vendor last received who may no longer be shared (opt-out, GPC,
               withdrawn consent, age); advertising partners get a removal list the same night
  deadlines    erasure requests and vendor pairs at risk or overdue (vendorprivacy.erasure.alerts)
  run          run_audit(): every check, then the report (the DAG, the CLI, the demo and the bench call it)
  charts       inline SVG charts, drawn in Python (no JavaScript library, no network)
  report       the HTML report and its JSON twin
  disclosure   one subject's right-to-know report: categories shared per category of third party
  datamap      the register-wide processing record (CSV and HTML)
  notify       the notification sent when a night has a critical finding (and the Airflow notifier)
  browser      headless Chromium: render a report, check its charts were drawn, take a screenshot
"""
