"""Webhooks: job events POSTed to URLs users registered, signed, retried, recorded.

``targets`` says where a webhook may point, ``signing`` how a body is signed (and how a
receiver checks it), ``store`` what REST reads and writes, ``dispatcher`` turns the durable
job event stream into deliveries and sends them, ``retention`` how long finished ones are kept.
"""
