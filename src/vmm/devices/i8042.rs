//! The i8042 keyboard controller, for its CPU-reset line only: 0xFE written
//! to the command port ends the run. No keyboard or mouse is attached.
//!
//! The status register always reads "output buffer full, input buffer
//! empty". Linux's i8042 driver drains the output buffer first and, finding
//! it never empties, reports "No controller found" at once, instead of
//! sitting through the half-second timeouts of each probe command a real
//! controller would answer. Its reboot path waits only for the input buffer
//! to be empty, so it sends the reset without delay.

use crate::vmm::layout::{I8042_COMMAND_PORT, I8042_DATA_PORT};

const CMD_RESET_CPU: u8 = 0xfe;
const STATUS_OUTPUT_FULL: u8 = 0x1;
/// Set once the controller passed its self test, as after POST.
const STATUS_SYSTEM_FLAG: u8 = 0x4;

/// What a write asked the machine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum I8042Event {
    None,
    /// Pulse the CPU reset line: the run ends.
    Reset,
}

/// The controller; it keeps no state.
#[derive(Debug, Default)]
pub(crate) struct I8042;

impl I8042 {
    pub(crate) fn read(&mut self, port: u16) -> u8 {
        match port {
            I8042_COMMAND_PORT => STATUS_OUTPUT_FULL | STATUS_SYSTEM_FLAG,
            I8042_DATA_PORT => 0,
            _ => 0xff,
        }
    }

    pub(crate) fn write(&mut self, port: u16, value: u8) -> I8042Event {
        if port == I8042_COMMAND_PORT && value == CMD_RESET_CPU {
            I8042Event::Reset
        } else {
            I8042Event::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_INPUT_FULL: u8 = 0x2;

    #[test]
    fn fe_on_the_command_port_resets_and_nothing_else_does() {
        let mut kbd = I8042;
        assert_eq!(kbd.write(I8042_DATA_PORT, CMD_RESET_CPU), I8042Event::None);
        assert_eq!(kbd.write(I8042_COMMAND_PORT, 0xaa), I8042Event::None);
        assert_eq!(
            kbd.write(I8042_COMMAND_PORT, CMD_RESET_CPU),
            I8042Event::Reset
        );
    }

    #[test]
    fn a_reboot_never_waits_and_a_driver_probe_gives_up_at_once() {
        let mut kbd = I8042;
        // Linux's kb_wait(): the input buffer must be empty before 0xFE.
        assert_eq!(kbd.read(I8042_COMMAND_PORT) & STATUS_INPUT_FULL, 0);
        // i8042_flush(): 16 reads and the output buffer is still full.
        for _ in 0..16 {
            kbd.read(I8042_DATA_PORT);
        }
        assert_ne!(kbd.read(I8042_COMMAND_PORT) & STATUS_OUTPUT_FULL, 0);
    }
}
