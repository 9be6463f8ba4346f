"""Notifications beyond the worker's MQTT topic: ticket messages posted to webhooks (WeCom/DingTalk robots, an
SMS gateway, anything that takes JSON). :mod:`gateway.notify.formats` builds the requests (pure);
:mod:`gateway.notify.service` subscribes to the workers' topics and delivers with retries."""
