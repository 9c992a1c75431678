"""The GraphQL the loop demo asks the Dagster webserver: runs, sensor ticks, and assets' latest records."""

RUNS = """
query ($filter: RunsFilter) { runsOrError(filter: $filter, limit: 20) { ... on Runs { results {
  runId jobName status tags { key value } } } } }
"""
TICKS = """
query ($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { ... on Sensor {
  sensorState { ticks(limit: 10) { id status timestamp skipReason runIds error { message } } } } } }
"""
GATE = """
query ($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
  assetMaterializations(limit: 1) { runId metadataEntries { label
    ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr } ... on BoolMetadataEntry { boolValue }
    ... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue } } } } } }
"""

DECISION = """
query ($path: [String!]!, $partition: String!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
  assetMaterializations(partitions: [$partition], limit: 1) { description } } } }
"""

SERVED = """
query ($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
  assetObservations(limit: 1) { metadataEntries { label
    ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr } } } } } }
"""

COMPARISON = """
query ($path: [String!]!, $partition: String!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
  assetMaterializations(partitions: [$partition], limit: 1) { runId metadataEntries { label
    ... on TextMetadataEntry { text } ... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue }
    ... on PathMetadataEntry { path } } } } } }
"""
