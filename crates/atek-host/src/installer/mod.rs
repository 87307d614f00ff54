//! Installs packages from folders and git repositories.
