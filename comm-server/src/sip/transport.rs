//! UDP and TCP drivers for the SIP endpoint.
