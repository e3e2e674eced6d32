"""Living under a service manager: systemd notifications (READY, STATUS, WATCHDOG)."""
