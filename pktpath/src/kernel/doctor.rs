//! pktpath doctor
