"""Operator tools behind ``infinitic-py dlq | status`` and the CLI's failure handling.

- ``settings``: the tools read the worker's config (``-c``, ``INFINITIC_*``): the broker, and
  where each declared service lives (``scopes``, pure: its own tenant / namespace / wire);
- ``dlq`` (pure): dead letters decoded, filtered, shown and turned into replays;
- ``dlq_store``: reads, replays and purges dead letters through the durable DLQ subscription;
- ``status`` (pure) + ``status_io``: a namespace's services from the admin API;
- ``failures``: one readable line for each way a command can fail;
- ``commands``: the argparse subcommands (``cli.py`` registers them).
"""
