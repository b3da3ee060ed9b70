//! XML dialog scripts: format, loader, validator and a pure interpreter.
