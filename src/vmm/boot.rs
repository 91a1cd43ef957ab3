//! Load a kernel the way the Linux x86 boot protocol wants
//! (Documentation/arch/x86/boot.rst): the image, the command line, the
//! initramfs at the top of RAM, and the zero page that tells the kernel
//! where each is and what the memory map looks like.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{BzImage, Cmdline, Elf, KernelLoader, load_cmdline};
use vm_memory::{Bytes, GuestAddress};

use super::VmmError;
use super::layout::ZERO_PAGE_START;
use super::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, EBDA_END, EBDA_START, HIMEM_START};
use super::memory::{GuestMem, ram_end};

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const BOOT_FLAG_MAGIC: u16 = 0xaa55;
const HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
/// type_of_loader "undefined": we are not a registered boot loader.
const LOADER_UNDEFINED: u8 = 0xff;
/// The boot protocol version (2.12) that added `xloadflags`.
const XLOADFLAGS_VERSION: u16 = 0x020c;
/// `xloadflags` bit: the kernel has the 64-bit entry point at +0x200.
const XLF_KERNEL_64: u16 = 1;
/// A bzImage's 64-bit entry point, relative to where it is loaded.
const BZIMAGE_64BIT_ENTRY: u64 = 0x200;
/// The highest initramfs address a kernel without initrd_addr_max accepts.
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x7fff_ffff;
const PAGE: u64 = 4096;

/// Where the loaded pieces are; what the zero page records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loaded {
    /// The 64-bit entry point, for RIP.
    pub entry: u64,
    /// Where the initramfs was put and its size (0, 0 without one).
    pub initramfs: (u64, u64),
}

/// Loads `kernel` (bzImage or ELF vmlinux), `initramfs` and `cmdline`, and
/// writes the zero page at [`ZERO_PAGE_START`].
pub(crate) fn load(
    mem: &GuestMem,
    kernel: &Path,
    initramfs: &[u8],
    cmdline: &str,
) -> Result<Loaded, VmmError> {
    let kernel_err = |source: io::Error| match source.kind() {
        io::ErrorKind::UnexpectedEof => VmmError::NotAKernel(kernel.to_owned()),
        _ => VmmError::KernelFile {
            path: kernel.to_owned(),
            source,
        },
    };
    let mut file = File::open(kernel).map_err(kernel_err)?;
    // Enough to see either format's magic: ELF at 0, "HdrS" at 0x202.
    let mut head = [0u8; 0x206];
    file.read_exact(&mut head).map_err(kernel_err)?;
    let himem = Some(GuestAddress(HIMEM_START));
    let (entry, kernel_end, mut hdr) = if head.starts_with(b"\x7fELF") {
        let r = Elf::load(mem, None, &mut file, himem).map_err(VmmError::KernelLoad)?;
        (r.kernel_load.0, r.kernel_end, elf_setup_header())
    } else if head[0x202..] == HDR_MAGIC.to_le_bytes() {
        let r = BzImage::load(mem, None, &mut file, himem).map_err(VmmError::KernelLoad)?;
        let hdr = r
            .setup_header
            .ok_or(VmmError::NotAKernel(kernel.to_owned()))?;
        // Entering at +0x200 in long mode is only valid where the header
        // says there is a 64-bit entry; elsewhere it triple-faults.
        if hdr.version < XLOADFLAGS_VERSION || hdr.xloadflags & XLF_KERNEL_64 == 0 {
            return Err(VmmError::Not64Bit(kernel.to_owned()));
        }
        (r.kernel_load.0 + BZIMAGE_64BIT_ENTRY, r.kernel_end, hdr)
    } else {
        return Err(VmmError::NotAKernel(kernel.to_owned()));
    };

    let cmdline = Cmdline::try_from(cmdline, CMDLINE_MAX_SIZE).map_err(VmmError::Cmdline)?;
    load_cmdline(mem, GuestAddress(CMDLINE_START), &cmdline).map_err(VmmError::KernelLoad)?;
    let cmdline_len = cmdline
        .as_cstring()
        .map_err(VmmError::Cmdline)?
        .as_bytes()
        .len();

    let initramfs_at = place_initramfs(mem, &hdr, kernel_end, initramfs)?;
    hdr.type_of_loader = LOADER_UNDEFINED;
    hdr.cmd_line_ptr = CMDLINE_START as u32;
    hdr.cmdline_size = cmdline_len as u32 + 1;
    hdr.ramdisk_image = initramfs_at.0 as u32;
    hdr.ramdisk_size = initramfs_at.1 as u32;
    write_zero_page(mem, hdr)?;
    Ok(Loaded {
        entry,
        initramfs: initramfs_at,
    })
}

/// An ELF vmlinux has no setup header; this is the one a bzImage of the
/// same kernel would carry, minus what only real-mode code reads.
fn elf_setup_header() -> setup_header {
    setup_header {
        boot_flag: BOOT_FLAG_MAGIC,
        header: HDR_MAGIC,
        kernel_alignment: 0x100_0000,
        ..Default::default()
    }
}

/// Copies the initramfs as high as RAM and the kernel allow, page-aligned.
fn place_initramfs(
    mem: &GuestMem,
    hdr: &setup_header,
    kernel_end: u64,
    initramfs: &[u8],
) -> Result<(u64, u64), VmmError> {
    if initramfs.is_empty() {
        return Ok((0, 0));
    }
    let addr_max = match hdr.initrd_addr_max {
        0 => DEFAULT_INITRD_ADDR_MAX,
        max => u64::from(max),
    };
    let top = ram_end(mem).min(addr_max + 1);
    let size = initramfs.len() as u64;
    let addr = top.checked_sub(size).map(|a| a & !(PAGE - 1));
    match addr {
        Some(addr) if addr >= kernel_end => {
            mem.write_slice(initramfs, GuestAddress(addr))
                .map_err(VmmError::Memory)?;
            Ok((addr, size))
        }
        _ => Err(VmmError::InitramfsTooBig {
            size,
            ram: ram_end(mem),
        }),
    }
}

/// The BIOS-style memory map: conventional memory up to the EBDA, the EBDA
/// (holding the MP table) reserved, and high memory up to the end of RAM.
pub(crate) fn e820_map(ram_end: u64) -> [boot_e820_entry; 3] {
    let entry = |addr, size, r#type| boot_e820_entry { addr, size, r#type };
    [
        entry(0, EBDA_START, E820_RAM),
        entry(EBDA_START, EBDA_END - EBDA_START, E820_RESERVED),
        entry(HIMEM_START, ram_end - HIMEM_START, E820_RAM),
    ]
}

/// Offset of `acpi_rsdp_addr` in the zero page (boot protocol 2.14).
const ZERO_PAGE_RSDP_OFFSET: u64 = 0x70;

/// Points the zero page written by [`load`] at the ACPI RSDP, so the
/// kernel need not scan for it.
pub(crate) fn set_rsdp(mem: &GuestMem, rsdp: u64) -> Result<(), VmmError> {
    mem.write_obj(rsdp, GuestAddress(ZERO_PAGE_START + ZERO_PAGE_RSDP_OFFSET))
        .map_err(VmmError::Memory)
}

fn write_zero_page(mem: &GuestMem, mut hdr: setup_header) -> Result<(), VmmError> {
    hdr.boot_flag = BOOT_FLAG_MAGIC;
    hdr.header = HDR_MAGIC;
    let mut params = boot_params {
        hdr,
        ..Default::default()
    };
    let map = e820_map(ram_end(mem));
    params.e820_table[..map.len()].copy_from_slice(&map);
    params.e820_entries = map.len() as u8;
    let zero_page = BootParams::new(&params, GuestAddress(ZERO_PAGE_START));
    LinuxBootConfigurator::write_bootparams(&zero_page, mem).map_err(VmmError::ZeroPage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::memory;

    fn read_zero_page(mem: &GuestMem) -> boot_params {
        mem.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap()
    }

    /// A minimal bzImage: one setup sector after the boot sector, the
    /// header fields the loader reads, then `payload` as the 32/64-bit part.
    fn fake_bzimage(payload: &[u8]) -> tempfile::NamedTempFile {
        fake_bzimage_with(payload, XLF_KERNEL_64)
    }

    fn fake_bzimage_with(payload: &[u8], xloadflags: u16) -> tempfile::NamedTempFile {
        let mut image = vec![0u8; 1024];
        image[0x1f1] = 1; // setup_sects
        image[0x1fe..0x200].copy_from_slice(&BOOT_FLAG_MAGIC.to_le_bytes());
        image[0x202..0x206].copy_from_slice(&HDR_MAGIC.to_le_bytes());
        image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes()); // version
        image[0x211] = 1; // loadflags: LOADED_HIGH
        image[0x214..0x218].copy_from_slice(&(HIMEM_START as u32).to_le_bytes());
        image[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        image[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        image.extend_from_slice(payload);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), image).unwrap();
        file
    }

    #[test]
    fn a_bzimage_loads_at_1_mib_and_enters_at_its_64_bit_entry() {
        let mem = memory::create(64).unwrap();
        let payload: Vec<u8> = (0..8192u32).map(|i| (i % 253) as u8).collect();
        let image = fake_bzimage(&payload);
        let initramfs = vec![0x5a; 5000];
        let loaded = load(&mem, image.path(), &initramfs, "console=ttyS0 quiet").unwrap();
        assert_eq!(loaded.entry, HIMEM_START + 0x200);
        let mut back = vec![0u8; payload.len()];
        mem.read_slice(&mut back, GuestAddress(HIMEM_START))
            .unwrap();
        assert_eq!(back, payload);

        let zp = read_zero_page(&mem);
        let hdr = zp.hdr;
        assert_eq!({ hdr.header }, HDR_MAGIC);
        assert_eq!({ hdr.boot_flag }, BOOT_FLAG_MAGIC);
        assert_eq!(hdr.type_of_loader, LOADER_UNDEFINED);
        assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ hdr.cmdline_size }, "console=ttyS0 quiet".len() as u32 + 1);
        let top = 64u64 << 20;
        assert_eq!(loaded.initramfs, ((top - 5000) & !0xfff, 5000));
        assert_eq!(u64::from(hdr.ramdisk_image), loaded.initramfs.0);
        assert_eq!({ hdr.ramdisk_size }, 5000);
        assert_eq!(zp.e820_entries, 3);
        let last = zp.e820_table[2];
        assert_eq!(
            ({ last.addr }, { last.size }),
            (HIMEM_START, top - HIMEM_START)
        );
    }

    #[test]
    fn other_files_are_refused_by_name() {
        let mem = memory::create(16).unwrap();
        let junk = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(junk.path(), vec![0x90; 4096]).unwrap();
        let err = load(&mem, junk.path(), &[], "").unwrap_err();
        assert!(matches!(err, VmmError::NotAKernel(_)), "{err}");
        std::fs::write(junk.path(), b"tiny").unwrap();
        assert!(matches!(
            load(&mem, junk.path(), &[], ""),
            Err(VmmError::NotAKernel(_))
        ));
        let missing = load(&mem, Path::new("/nonexistent/vmlinux"), &[], "").unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/vmlinux"),
            "{missing}"
        );
    }

    #[test]
    fn a_bzimage_without_a_64_bit_entry_is_refused() {
        let mem = memory::create(16).unwrap();
        let image = fake_bzimage_with(&[0; 512], 0);
        let err = load(&mem, image.path(), &[], "").unwrap_err();
        assert!(matches!(err, VmmError::Not64Bit(_)), "{err}");
        assert!(err.to_string().contains("kernel build"), "{err}");
    }

    #[test]
    fn an_initramfs_too_big_for_ram_is_an_error() {
        let mem = memory::create(16).unwrap();
        let image = fake_bzimage(&[0; 512]);
        let err = load(&mem, image.path(), &vec![0; 16 << 20], "").unwrap_err();
        assert!(matches!(err, VmmError::InitramfsTooBig { .. }), "{err}");
    }
}
