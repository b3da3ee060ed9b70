//! Test user agent and harness for the end-to-end suite.
