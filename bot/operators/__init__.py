"""The operators' side: the service the console and the Telegram desk share."""
