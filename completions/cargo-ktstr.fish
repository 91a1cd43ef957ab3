# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cargo_ktstr_global_optspecs
    string join \n v/verbose q/quiet cache-dir= h/help V/version
end

function __fish_cargo_ktstr_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cargo_ktstr_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cargo_ktstr_using_subcommand
    set -l cmd (__fish_cargo_ktstr_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cargo-ktstr -n "__fish_cargo_ktstr_needs_command" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_needs_command" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_needs_command" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_needs_command" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_needs_command" -f -a "clean" -d 'Remove debris left by dead processes; with --all, also every entry not in use'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_needs_command" -f -a "template" -d 'Build, clone and list disk templates'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_needs_command" -f -a "kernel" -d 'Build and list guest kernels'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_needs_command" -f -a "remote" -d 'The remote kernel cache a fleet shares (docs/remote-cache.md)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -l older-than -d 'Remove entries last used longer ago than DURATION: 90s, 30m, 12h, 7d, 2w (a bare number is seconds)' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -l max-size -d 'Remove least recently used entries until the templates allocate at most SIZE: bytes, or 512M, 4G, 4GiB, 1T' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -l min-free -d 'Remove least recently used entries until the root\'s filesystem has SIZE available (as df shows it); exit 1 if it cannot. When even removing every entry no process holds would fall short, none is removed' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -l plan -d 'Remove exactly what a `--dry-run --json` report listed, each only if it is unchanged (and an entry unused) since' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -l all -d 'After the debris, remove every published entry no process holds'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -l stale -d 'After the debris, remove entries made by another formatter version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -l dry-run -d 'List what would be removed; change nothing'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -l json -d 'Print one JSON document on stdout'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -s h -l help -d 'Print help'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand clean" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and not __fish_seen_subcommand_from build clone list help" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and not __fish_seen_subcommand_from build clone list help" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and not __fish_seen_subcommand_from build clone list help" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and not __fish_seen_subcommand_from build clone list help" -s h -l help -d 'Print help'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and not __fish_seen_subcommand_from build clone list help" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and not __fish_seen_subcommand_from build clone list help" -f -a "build" -d 'Build templates (or find them) and print their paths'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and not __fish_seen_subcommand_from build clone list help" -f -a "clone" -d 'Give DEST its own copy-on-write clone of a template, building it on a miss; or each FS[:SIZE]=DEST its own'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and not __fish_seen_subcommand_from build clone list help" -f -a "list" -d 'List published templates and count debris'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and not __fish_seen_subcommand_from build clone list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -l fs -d 'The filesystem to format [default: btrfs]' -r -f -a "btrfs\t''
xfs\t''
ext4\t''"
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -l capacity -d 'Disk capacity, a whole number of MiB: 256M, 256MiB, 1G, 1GiB or bytes [default: 256M; 300M for xfs]' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -l kernel -d 'The guest kernel (bzImage) [default: $KTSTR_KERNEL, else the newest cached kernel, else the running or newest /boot/vmlinuz-<release> with its modules]' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -l vmm -d 'Which VMM boots the template guest' -r -f -a "auto\t'The built-in VMM where KVM can boot a stock kernel, else QEMU'
kvm\t'The built-in VMM'
qemu\t'qemu-system-x86_64 -M microvm'"
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -l timeout -d 'How long the guest may run before it is stopped: 1s to 1d' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -l memory -d 'Guest memory, a whole number of MiB, at most 3G (a bare number is MiB); a build refuses less than its kernel and initramfs need' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -l lock-timeout -d 'How long to wait for another process building the same template' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -l no-evict -d 'On a full disk, fail instead of removing debris and least recently used templates no process holds and trying once more'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -l verify -d 'Before publishing a build, have the guest mount the new filesystem read-only with its own kernel and read its statfs; a failure publishes nothing'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -l force -d 'Rebuild and replace the entry even when it exists'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -l json -d 'Print key, path, fs, capacity, built-or-found and seconds as JSON (an array of them for FS:SIZE arguments)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from build" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -l fs -d 'The filesystem to format [default: btrfs]' -r -f -a "btrfs\t''
xfs\t''
ext4\t''"
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -l capacity -d 'Disk capacity, a whole number of MiB: 256M, 256MiB, 1G, 1GiB or bytes [default: 256M; 300M for xfs]' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -l kernel -d 'The guest kernel (bzImage) [default: $KTSTR_KERNEL, else the newest cached kernel, else the running or newest /boot/vmlinuz-<release> with its modules]' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -l vmm -d 'Which VMM boots the template guest' -r -f -a "auto\t'The built-in VMM where KVM can boot a stock kernel, else QEMU'
kvm\t'The built-in VMM'
qemu\t'qemu-system-x86_64 -M microvm'"
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -l timeout -d 'How long the guest may run before it is stopped: 1s to 1d' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -l memory -d 'Guest memory, a whole number of MiB, at most 3G (a bare number is MiB); a build refuses less than its kernel and initramfs need' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -l lock-timeout -d 'How long to wait for another process building the same template' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -l reflink -d 'How to copy: FICLONE only, FICLONE else a sparse copy, or a sparse copy' -r -f -a "auto\t'FICLONE, else a sparse copy'
always\t'FICLONE only; fail where the filesystem cannot'
never\t'A sparse copy of the data extents'"
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -l no-evict -d 'On a full disk, fail instead of removing debris and least recently used templates no process holds and trying once more'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -l verify -d 'Before publishing a build, have the guest mount the new filesystem read-only with its own kernel and read its statfs; a failure publishes nothing'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from clone" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from list" -l sort -d 'Order the entries: by key (default), size (largest first), age (oldest first) or last-used (least recently used first, the order clean\'s budgets remove in)' -r -f -a "size\t''
age\t''
last-used\t''"
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from list" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON document on stdout'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from help" -f -a "build" -d 'Build templates (or find them) and print their paths'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from help" -f -a "clone" -d 'Give DEST its own copy-on-write clone of a template, building it on a miss; or each FS[:SIZE]=DEST its own'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from help" -f -a "list" -d 'List published templates and count debris'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand template; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and not __fish_seen_subcommand_from build push list clean help" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and not __fish_seen_subcommand_from build push list clean help" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and not __fish_seen_subcommand_from build push list clean help" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and not __fish_seen_subcommand_from build push list clean help" -s h -l help -d 'Print help'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and not __fish_seen_subcommand_from build push list clean help" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and not __fish_seen_subcommand_from build push list clean help" -f -a "build" -d 'Build a guest bzImage from a kernel source tree or tarball and cache it (pulled from the remote kernel cache instead, when it has it)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and not __fish_seen_subcommand_from build push list clean help" -f -a "push" -d 'Push cached kernels to the remote kernel cache'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and not __fish_seen_subcommand_from build push list clean help" -f -a "list" -d 'List the kernels a template build can use: cached ones, and stock kernels in /boot with their modules; the first is the default. Those this user cannot read follow the readable ones, marked unreadable'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and not __fish_seen_subcommand_from build push list clean help" -f -a "clean" -d 'Remove dead builds\' scratch and, with --keep or --older-than, cached kernels no build is using'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and not __fish_seen_subcommand_from build push list clean help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from build" -l source -d 'A kernel source directory or tarball (e.g. /usr/src/linux-source-6.12.tar.xz)' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from build" -s j -l jobs -d 'Parallel make jobs [default: the number of CPUs]' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from build" -l kind -d 'What the kernel is for: the template guest, or the KVM host of the nested-KVM test lane (the template kernel plus KVM and KVM_AMD)' -r -f -a "template\t''
kvm-host\t''"
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from build" -l remote -d 'The remote kernel cache [default: $KTSTR_REMOTE_CACHE]: s3://BUCKET/PREFIX?endpoint=URL&region=REGION (credentials from AWS_*), webdav+http://HOST/PATH, file:///PATH or gha://PREFIX' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from build" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from build" -l force -d 'Rebuild even when the cache has this kernel'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from build" -l remote-write -d 'Allow writes to the remote, as KTSTR_REMOTE_CACHE_MODE=read-write does; it is read-only otherwise (give a fork\'s pull request neither)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from build" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from build" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from build" -s h -l help -d 'Print help'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from build" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from push" -l remote -d 'The remote kernel cache [default: $KTSTR_REMOTE_CACHE]: s3://BUCKET/PREFIX?endpoint=URL&region=REGION (credentials from AWS_*), webdav+http://HOST/PATH, file:///PATH or gha://PREFIX' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from push" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from push" -l remote-write -d 'Allow writes to the remote, as KTSTR_REMOTE_CACHE_MODE=read-write does; it is read-only otherwise (give a fork\'s pull request neither)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from push" -l json -d 'Print one JSON document on stdout'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from push" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from push" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from push" -s h -l help -d 'Print help'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from push" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from list" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON document on stdout'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from clean" -l keep -d 'Keep the N most recently used kernels of each kind (template, kvm-host)' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from clean" -l older-than -d 'Remove kernels last used longer ago than DURATION: 90s, 30m, 12h, 7d, 2w, a bare number is seconds (with --keep, only those beyond the N kept)' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from clean" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from clean" -l dry-run -d 'List what would be removed; change nothing'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from clean" -l json -d 'Print one JSON document on stdout'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from clean" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from clean" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from clean" -s h -l help -d 'Print help'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from clean" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from help" -f -a "build" -d 'Build a guest bzImage from a kernel source tree or tarball and cache it (pulled from the remote kernel cache instead, when it has it)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from help" -f -a "push" -d 'Push cached kernels to the remote kernel cache'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the kernels a template build can use: cached ones, and stock kernels in /boot with their modules; the first is the default. Those this user cannot read follow the readable ones, marked unreadable'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from help" -f -a "clean" -d 'Remove dead builds\' scratch and, with --keep or --older-than, cached kernels no build is using'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand kernel; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and not __fish_seen_subcommand_from check help" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and not __fish_seen_subcommand_from check help" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and not __fish_seen_subcommand_from check help" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and not __fish_seen_subcommand_from check help" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Say what the remote kernel cache can do (read, list, write, conditional write) and its round trip; exit 1 when it is unreachable'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and __fish_seen_subcommand_from check" -l remote -d 'The remote kernel cache [default: $KTSTR_REMOTE_CACHE]: s3://BUCKET/PREFIX?endpoint=URL&region=REGION (credentials from AWS_*), webdav+http://HOST/PATH, file:///PATH or gha://PREFIX' -r
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and __fish_seen_subcommand_from check" -l cache-dir -d 'The template root to use instead of `<ktstr cache>/disk_templates` (for instance a ktstr 0.15 cache directory). Templates only: the `kernel` commands keep kernels in `<ktstr cache>/kernels` regardless' -r -F
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and __fish_seen_subcommand_from check" -l remote-write -d 'Allow writes to the remote, as KTSTR_REMOTE_CACHE_MODE=read-write does; it is read-only otherwise (give a fork\'s pull request neither)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and __fish_seen_subcommand_from check" -l json -d 'Print one JSON document on stdout'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and __fish_seen_subcommand_from check" -s v -l verbose -d 'More output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG works too)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Only errors on stderr'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and __fish_seen_subcommand_from help" -f -a "check" -d 'Say what the remote kernel cache can do (read, list, write, conditional write) and its round trip; exit 1 when it is unreachable'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand remote; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and not __fish_seen_subcommand_from clean template kernel remote help" -f -a "clean" -d 'Remove debris left by dead processes; with --all, also every entry not in use'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and not __fish_seen_subcommand_from clean template kernel remote help" -f -a "template" -d 'Build, clone and list disk templates'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and not __fish_seen_subcommand_from clean template kernel remote help" -f -a "kernel" -d 'Build and list guest kernels'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and not __fish_seen_subcommand_from clean template kernel remote help" -f -a "remote" -d 'The remote kernel cache a fleet shares (docs/remote-cache.md)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and not __fish_seen_subcommand_from clean template kernel remote help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and __fish_seen_subcommand_from template" -f -a "build" -d 'Build templates (or find them) and print their paths'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and __fish_seen_subcommand_from template" -f -a "clone" -d 'Give DEST its own copy-on-write clone of a template, building it on a miss; or each FS[:SIZE]=DEST its own'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and __fish_seen_subcommand_from template" -f -a "list" -d 'List published templates and count debris'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and __fish_seen_subcommand_from kernel" -f -a "build" -d 'Build a guest bzImage from a kernel source tree or tarball and cache it (pulled from the remote kernel cache instead, when it has it)'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and __fish_seen_subcommand_from kernel" -f -a "push" -d 'Push cached kernels to the remote kernel cache'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and __fish_seen_subcommand_from kernel" -f -a "list" -d 'List the kernels a template build can use: cached ones, and stock kernels in /boot with their modules; the first is the default. Those this user cannot read follow the readable ones, marked unreadable'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and __fish_seen_subcommand_from kernel" -f -a "clean" -d 'Remove dead builds\' scratch and, with --keep or --older-than, cached kernels no build is using'
complete -c cargo-ktstr -n "__fish_cargo_ktstr_using_subcommand help; and __fish_seen_subcommand_from remote" -f -a "check" -d 'Say what the remote kernel cache can do (read, list, write, conditional write) and its round trip; exit 1 when it is unreachable'

# `cargo ktstr ...` runs `cargo-ktstr ktstr ...`: complete it as `cargo-ktstr ...`.
# fish adds this to cargo's own completions rather than replacing them.

# The words after `ktstr`, escaped; false if the cargo command is not ktstr.
function __fish_cargo_ktstr_args
    set -l words (commandline -opc)
    set -e words[1]
    while set -q words[1]
        switch $words[1]
            case ktstr
                set -e words[1]
                string escape -- $words
                return 0
            case '-*' '+*'
                set -e words[1]
            case '*'
                return 1
        end
    end
    return 1
end

function __fish_cargo_ktstr_complete
    set -l args (__fish_cargo_ktstr_args)
    set -l cur (commandline -ct)
    complete -C "cargo-ktstr $args $cur"
end

complete -c cargo -n __fish_cargo_ktstr_args -f -a '(__fish_cargo_ktstr_complete)'
