"""Infinitic 0.18 wire dialect: serve Infinitic's JVM workflows and call JVM services from Python.

Modules (needs the ``infinitic`` extra: fastavro):

- ``schemas``: the envelope schemas, byte-exact as the JVM registers them, and their fastavro form;
- ``envelopes``: typed envelope records and their Avro binary encoding (pure);
- ``values``: Python values <-> ``SerializedData`` JSON for the JVM's declared types (pure);
- ``outcomes``: the events / retry / client messages built from an ``ExecuteTask`` (pure);
- ``registry``: Pulsar schema-registry glue (the schema to produce with, writer-schema lookup).

Wire facts and pitfalls are in ``NOTES.md`` beside this file.
"""
