"""One dynamic partition per product SKU: the inbox sensor adds a SKU when its photo and brief land."""

import dagster as dg

__all__ = ["sku_partitions"]

sku_partitions = dg.DynamicPartitionsDefinition(name="sku")
