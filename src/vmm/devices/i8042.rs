//! Just enough of the i8042 keyboard controller for a guest to reset the
//! machine: the CPU-reset command (0xFE on the command port), the status
//! register a driver polls first, and the controller's command byte.

use std::collections::VecDeque;

use crate::vmm::layout::{I8042_COMMAND_PORT, I8042_DATA_PORT};

const CMD_READ_CONFIG: u8 = 0x20;
const CMD_WRITE_CONFIG: u8 = 0x60;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_RESET_CPU: u8 = 0xfe;
const SELF_TEST_PASSED: u8 = 0x55;
const STATUS_OUTPUT_FULL: u8 = 0x1;
/// Set once the controller passed its self test, as after POST.
const STATUS_SYSTEM_FLAG: u8 = 0x4;

/// What a write asked the machine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I8042Event {
    None,
    /// Pulse the CPU reset line: the run ends.
    Reset,
}

/// The controller's state.
#[derive(Debug)]
pub struct I8042 {
    config: u8,
    output: VecDeque<u8>,
    writing_config: bool,
}

impl Default for I8042 {
    fn default() -> Self {
        // Keyboard interrupt on, keyboard clock enabled, translation on.
        I8042 {
            config: 0x45,
            output: VecDeque::new(),
            writing_config: false,
        }
    }
}

impl I8042 {
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            I8042_COMMAND_PORT if self.output.is_empty() => STATUS_SYSTEM_FLAG,
            I8042_COMMAND_PORT => STATUS_SYSTEM_FLAG | STATUS_OUTPUT_FULL,
            I8042_DATA_PORT => self.output.pop_front().unwrap_or(0),
            _ => 0xff,
        }
    }

    pub fn write(&mut self, port: u16, value: u8) -> I8042Event {
        match (port, value) {
            (I8042_COMMAND_PORT, CMD_RESET_CPU) => return I8042Event::Reset,
            (I8042_COMMAND_PORT, CMD_READ_CONFIG) => self.output.push_back(self.config),
            (I8042_COMMAND_PORT, CMD_WRITE_CONFIG) => self.writing_config = true,
            (I8042_COMMAND_PORT, CMD_SELF_TEST) => self.output.push_back(SELF_TEST_PASSED),
            (I8042_DATA_PORT, v) if self.writing_config => {
                self.config = v;
                self.writing_config = false;
            }
            // No keyboard is attached: other commands and data are dropped.
            _ => {}
        }
        I8042Event::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fe_on_the_command_port_resets_and_nothing_else_does() {
        let mut kbd = I8042::default();
        assert_eq!(kbd.write(I8042_DATA_PORT, CMD_RESET_CPU), I8042Event::None);
        assert_eq!(kbd.write(I8042_COMMAND_PORT, 0xad), I8042Event::None);
        assert_eq!(
            kbd.write(I8042_COMMAND_PORT, CMD_RESET_CPU),
            I8042Event::Reset
        );
    }

    #[test]
    fn status_shows_an_empty_input_buffer_so_a_reset_can_be_sent() {
        let mut kbd = I8042::default();
        assert_eq!(kbd.read(I8042_COMMAND_PORT) & 0x2, 0);
        assert_eq!(kbd.read(I8042_COMMAND_PORT) & STATUS_OUTPUT_FULL, 0);
    }

    #[test]
    fn the_command_byte_round_trips() {
        let mut kbd = I8042::default();
        kbd.write(I8042_COMMAND_PORT, CMD_WRITE_CONFIG);
        kbd.write(I8042_DATA_PORT, 0x30);
        kbd.write(I8042_COMMAND_PORT, CMD_READ_CONFIG);
        assert_ne!(kbd.read(I8042_COMMAND_PORT) & STATUS_OUTPUT_FULL, 0);
        assert_eq!(kbd.read(I8042_DATA_PORT), 0x30);
        kbd.write(I8042_COMMAND_PORT, CMD_SELF_TEST);
        assert_eq!(kbd.read(I8042_DATA_PORT), SELF_TEST_PASSED);
    }
}
