"""Erasure and opt-out propagation: the privacy team files requests; a run reaches every recipient and proves it.

Modules (import what you need; nothing heavy is imported here, so DAG parsing stays fast):

  requests     request kinds, row validation (one clear error per bad row), the subject's identifiers
  identity     AES-GCM sealing of identifiers at rest; keyed lookups for duplicate detection
  intake       file one request or a CSV batch (all or nothing); under-13s found in the shop
  store        the ledger side: requests, (request, vendor) pairs and their state machine, the timeline
  resolve      find the subject in the shop database (customer ids, e-mails, phones, orders, devices)
  identifiers  each vendor's identifiers, exactly as its feed sent them
  recipients   who must be told: ledger recipients + always-notify service providers
  deadlines    CCPA / GDPR due dates, business days, at-risk and overdue (pure functions)
  propagate    the run's steps: select, resolve & suppress, plan, submit, poll, finish (used by the DAG)
  evidence     per-request JSON and HTML reports, PII-free
  alerts       deadline_check (the DAG and the nightly audit) and the Airflow deadline callback
  callbacks    signed OpenDSR status callbacks (served by plugins/erasure_callbacks.py)
  protocols    vendor protocol clients (sftp_ack, opendsr, s3_removal_list), maintained separately
"""
