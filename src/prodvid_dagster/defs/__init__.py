"""prodvid's definitions, one concept per module: `dg.load_from_defs_folder` (prodvid_dagster.definitions)
loads every module here and merges what each holds: the assets, their checks, the `prodvid` job, the inbox
sensor and the sensor that runs again the good SKUs of a backfill a bad SKU failed (`remainder`), and the
resources every one of them is given."""
