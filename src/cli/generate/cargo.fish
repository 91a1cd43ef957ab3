
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
