//! Delivery to the downstream (to be written: see the spool/relay helper task).
