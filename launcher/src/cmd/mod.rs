//! One module per subcommand, all on one floor: each speaks to the
//! [`runtime`](crate::runtime), [`follow`](crate::follow) and the modules
//! below them, never to another subcommand.

pub mod build;
pub mod disrupt;
pub mod down;
pub mod logs;
pub mod ps;
pub mod push;
pub mod scale;
pub mod send;
pub mod stats;
pub mod token;
pub mod up;
