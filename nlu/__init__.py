"""Intent recognition: Rasa-format data, the parser interface and its backends."""
