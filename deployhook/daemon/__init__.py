"""The process: listen, signals, systemd notifications, reload, logging."""
