_cargo_ktstr() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="cargo_ktstr"
                ;;
            cargo_ktstr,clean)
                cmd="cargo_ktstr__subcmd__clean"
                ;;
            cargo_ktstr,help)
                cmd="cargo_ktstr__subcmd__help"
                ;;
            cargo_ktstr,kernel)
                cmd="cargo_ktstr__subcmd__kernel"
                ;;
            cargo_ktstr,remote)
                cmd="cargo_ktstr__subcmd__remote"
                ;;
            cargo_ktstr,template)
                cmd="cargo_ktstr__subcmd__template"
                ;;
            cargo_ktstr__subcmd__help,clean)
                cmd="cargo_ktstr__subcmd__help__subcmd__clean"
                ;;
            cargo_ktstr__subcmd__help,help)
                cmd="cargo_ktstr__subcmd__help__subcmd__help"
                ;;
            cargo_ktstr__subcmd__help,kernel)
                cmd="cargo_ktstr__subcmd__help__subcmd__kernel"
                ;;
            cargo_ktstr__subcmd__help,remote)
                cmd="cargo_ktstr__subcmd__help__subcmd__remote"
                ;;
            cargo_ktstr__subcmd__help,template)
                cmd="cargo_ktstr__subcmd__help__subcmd__template"
                ;;
            cargo_ktstr__subcmd__help__subcmd__kernel,build)
                cmd="cargo_ktstr__subcmd__help__subcmd__kernel__subcmd__build"
                ;;
            cargo_ktstr__subcmd__help__subcmd__kernel,clean)
                cmd="cargo_ktstr__subcmd__help__subcmd__kernel__subcmd__clean"
                ;;
            cargo_ktstr__subcmd__help__subcmd__kernel,list)
                cmd="cargo_ktstr__subcmd__help__subcmd__kernel__subcmd__list"
                ;;
            cargo_ktstr__subcmd__help__subcmd__kernel,push)
                cmd="cargo_ktstr__subcmd__help__subcmd__kernel__subcmd__push"
                ;;
            cargo_ktstr__subcmd__help__subcmd__remote,check)
                cmd="cargo_ktstr__subcmd__help__subcmd__remote__subcmd__check"
                ;;
            cargo_ktstr__subcmd__help__subcmd__template,build)
                cmd="cargo_ktstr__subcmd__help__subcmd__template__subcmd__build"
                ;;
            cargo_ktstr__subcmd__help__subcmd__template,clone)
                cmd="cargo_ktstr__subcmd__help__subcmd__template__subcmd__clone"
                ;;
            cargo_ktstr__subcmd__help__subcmd__template,list)
                cmd="cargo_ktstr__subcmd__help__subcmd__template__subcmd__list"
                ;;
            cargo_ktstr__subcmd__kernel,build)
                cmd="cargo_ktstr__subcmd__kernel__subcmd__build"
                ;;
            cargo_ktstr__subcmd__kernel,clean)
                cmd="cargo_ktstr__subcmd__kernel__subcmd__clean"
                ;;
            cargo_ktstr__subcmd__kernel,help)
                cmd="cargo_ktstr__subcmd__kernel__subcmd__help"
                ;;
            cargo_ktstr__subcmd__kernel,list)
                cmd="cargo_ktstr__subcmd__kernel__subcmd__list"
                ;;
            cargo_ktstr__subcmd__kernel,push)
                cmd="cargo_ktstr__subcmd__kernel__subcmd__push"
                ;;
            cargo_ktstr__subcmd__kernel__subcmd__help,build)
                cmd="cargo_ktstr__subcmd__kernel__subcmd__help__subcmd__build"
                ;;
            cargo_ktstr__subcmd__kernel__subcmd__help,clean)
                cmd="cargo_ktstr__subcmd__kernel__subcmd__help__subcmd__clean"
                ;;
            cargo_ktstr__subcmd__kernel__subcmd__help,help)
                cmd="cargo_ktstr__subcmd__kernel__subcmd__help__subcmd__help"
                ;;
            cargo_ktstr__subcmd__kernel__subcmd__help,list)
                cmd="cargo_ktstr__subcmd__kernel__subcmd__help__subcmd__list"
                ;;
            cargo_ktstr__subcmd__kernel__subcmd__help,push)
                cmd="cargo_ktstr__subcmd__kernel__subcmd__help__subcmd__push"
                ;;
            cargo_ktstr__subcmd__remote,check)
                cmd="cargo_ktstr__subcmd__remote__subcmd__check"
                ;;
            cargo_ktstr__subcmd__remote,help)
                cmd="cargo_ktstr__subcmd__remote__subcmd__help"
                ;;
            cargo_ktstr__subcmd__remote__subcmd__help,check)
                cmd="cargo_ktstr__subcmd__remote__subcmd__help__subcmd__check"
                ;;
            cargo_ktstr__subcmd__remote__subcmd__help,help)
                cmd="cargo_ktstr__subcmd__remote__subcmd__help__subcmd__help"
                ;;
            cargo_ktstr__subcmd__template,build)
                cmd="cargo_ktstr__subcmd__template__subcmd__build"
                ;;
            cargo_ktstr__subcmd__template,clone)
                cmd="cargo_ktstr__subcmd__template__subcmd__clone"
                ;;
            cargo_ktstr__subcmd__template,help)
                cmd="cargo_ktstr__subcmd__template__subcmd__help"
                ;;
            cargo_ktstr__subcmd__template,list)
                cmd="cargo_ktstr__subcmd__template__subcmd__list"
                ;;
            cargo_ktstr__subcmd__template__subcmd__help,build)
                cmd="cargo_ktstr__subcmd__template__subcmd__help__subcmd__build"
                ;;
            cargo_ktstr__subcmd__template__subcmd__help,clone)
                cmd="cargo_ktstr__subcmd__template__subcmd__help__subcmd__clone"
                ;;
            cargo_ktstr__subcmd__template__subcmd__help,help)
                cmd="cargo_ktstr__subcmd__template__subcmd__help__subcmd__help"
                ;;
            cargo_ktstr__subcmd__template__subcmd__help,list)
                cmd="cargo_ktstr__subcmd__template__subcmd__help__subcmd__list"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        cargo_ktstr)
            opts="-v -q -h -V --verbose --quiet --cache-dir --help --version clean template kernel remote help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__clean)
            opts="-v -q -h -V --all --stale --older-than --max-size --min-free --plan --dry-run --json --verbose --quiet --cache-dir --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --older-than)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-size)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --min-free)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --plan)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help)
            opts="clean template kernel remote help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__clean)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__kernel)
            opts="build push list clean"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__kernel__subcmd__build)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__kernel__subcmd__clean)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__kernel__subcmd__list)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__kernel__subcmd__push)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__remote)
            opts="check"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__remote__subcmd__check)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__template)
            opts="build clone list"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__template__subcmd__build)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__template__subcmd__clone)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__help__subcmd__template__subcmd__list)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__kernel)
            opts="-v -q -h -V --verbose --quiet --cache-dir --help --version build push list clean help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__kernel__subcmd__build)
            opts="-j -v -q -h -V --source --jobs --force --kind --remote --remote-write --verbose --quiet --cache-dir --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --source)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --jobs)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -j)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kind)
                    COMPREPLY=($(compgen -W "template kvm-host" -- "${cur}"))
                    return 0
                    ;;
                --remote)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__kernel__subcmd__clean)
            opts="-v -q -h -V --keep --older-than --dry-run --json --verbose --quiet --cache-dir --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --keep)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --older-than)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__kernel__subcmd__help)
            opts="build push list clean help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__kernel__subcmd__help__subcmd__build)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__kernel__subcmd__help__subcmd__clean)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__kernel__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__kernel__subcmd__help__subcmd__list)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__kernel__subcmd__help__subcmd__push)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__kernel__subcmd__list)
            opts="-v -q -h -V --json --verbose --quiet --cache-dir --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__kernel__subcmd__push)
            opts="-v -q -h -V --remote --remote-write --json --verbose --quiet --cache-dir --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --remote)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__remote)
            opts="-v -q -h -V --verbose --quiet --cache-dir --help --version check help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__remote__subcmd__check)
            opts="-v -q -h -V --remote --remote-write --json --verbose --quiet --cache-dir --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --remote)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__remote__subcmd__help)
            opts="check help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__remote__subcmd__help__subcmd__check)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__remote__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__template)
            opts="-v -q -h -V --verbose --quiet --cache-dir --help --version build clone list help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__template__subcmd__build)
            opts="-v -q -h -V --fs --capacity --kernel --vmm --timeout --memory --lock-timeout --no-evict --verify --force --json --verbose --quiet --cache-dir --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --fs)
                    COMPREPLY=($(compgen -W "btrfs xfs ext4" -- "${cur}"))
                    return 0
                    ;;
                --capacity)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kernel)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --vmm)
                    COMPREPLY=($(compgen -W "auto kvm qemu" -- "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --memory)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --lock-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__template__subcmd__clone)
            opts="-v -q -h -V --fs --capacity --kernel --vmm --timeout --memory --lock-timeout --no-evict --verify --reflink --verbose --quiet --cache-dir --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --fs)
                    COMPREPLY=($(compgen -W "btrfs xfs ext4" -- "${cur}"))
                    return 0
                    ;;
                --capacity)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --kernel)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --vmm)
                    COMPREPLY=($(compgen -W "auto kvm qemu" -- "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --memory)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --lock-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --reflink)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__template__subcmd__help)
            opts="build clone list help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__template__subcmd__help__subcmd__build)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__template__subcmd__help__subcmd__clone)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__template__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__template__subcmd__help__subcmd__list)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        cargo_ktstr__subcmd__template__subcmd__list)
            opts="-v -q -h -V --json --sort --verbose --quiet --cache-dir --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --sort)
                    COMPREPLY=($(compgen -W "size age last-used" -- "${cur}"))
                    return 0
                    ;;
                --cache-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _cargo_ktstr -o nosort -o bashdefault -o default cargo-ktstr
else
    complete -F _cargo_ktstr -o bashdefault -o default cargo-ktstr
fi

# `cargo ktstr ...` runs `cargo-ktstr ktstr ...`: complete it as `cargo-ktstr ...`.
# Every other cargo command goes to the cargo completion registered before this
# file was sourced, or else the one bash-completion can load.
_cargo_ktstr_spec=$(complete -p cargo 2>/dev/null)
case $_cargo_ktstr_spec in
    *" -F _cargo_ktstr_via_cargo "*) ;; # sourced again: keep the one found first
    *" -F "*)
        _cargo_ktstr_next=${_cargo_ktstr_spec#* -F }
        _cargo_ktstr_next=${_cargo_ktstr_next%% *}
        ;;
esac
unset _cargo_ktstr_spec

_cargo_ktstr_register() {
    if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
        complete -F _cargo_ktstr_via_cargo -o nosort -o bashdefault -o default cargo
    else
        complete -F _cargo_ktstr_via_cargo -o bashdefault -o default cargo
    fi
}

_cargo_ktstr_via_cargo() {
    local i=1
    # cargo's own options may come before the command.
    while (( i < COMP_CWORD )); do
        case "${COMP_WORDS[i]}" in
            --color|--config|--explain|-C|-Z) (( i += 2 )) ;;
            [-+]*) (( i += 1 )) ;;
            *) break ;;
        esac
    done
    if (( i < COMP_CWORD )) && [[ "${COMP_WORDS[i]}" == ktstr ]]; then
        local -a words=(cargo-ktstr "${COMP_WORDS[@]:i+1}")
        local cword=$(( COMP_CWORD - i ))
        local COMP_CWORD=$cword
        local -a COMP_WORDS=("${words[@]}")
        _cargo_ktstr cargo-ktstr "$2" "${COMP_WORDS[COMP_CWORD-1]}"
        return
    fi
    if [[ -z "${_cargo_ktstr_next-}" ]]; then
        # bash-completion loads a command's completion on first use, but this
        # one took `cargo`'s place: load it by hand, then take the place back.
        if declare -F _comp_load >/dev/null; then
            _comp_load cargo
        elif declare -F __load_completion >/dev/null; then
            __load_completion cargo
        fi
        local spec
        spec=$(complete -p cargo 2>/dev/null)
        case $spec in
            *" -F _cargo_ktstr_via_cargo "*) ;;
            *" -F "*)
                _cargo_ktstr_next=${spec#* -F }
                _cargo_ktstr_next=${_cargo_ktstr_next%% *}
                ;;
        esac
        _cargo_ktstr_register
    fi
    if [[ -n "${_cargo_ktstr_next-}" ]]; then
        "$_cargo_ktstr_next" "$@"
    elif (( i == COMP_CWORD )); then
        # No cargo completion anywhere: still name this command.
        COMPREPLY=( $(compgen -W "ktstr" -- "$2") )
    fi
}

_cargo_ktstr_register
