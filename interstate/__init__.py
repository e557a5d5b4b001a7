"""Interstate CAD-to-CAD escalation: NENA EIDO over signed REST, delivered from a transactional outbox."""
