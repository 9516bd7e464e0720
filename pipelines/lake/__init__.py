"""The lake: every topic appended to Parquet by the ``sink`` (with sampled data-quality checks),
compacted by hour (``parquet``), read back in event order (``event_log``); histories from
elsewhere brought in by ``importer``, with the source families they hold (``sources``)."""
