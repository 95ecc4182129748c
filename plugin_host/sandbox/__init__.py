"""The box around every plugin process (issue 5).

    hook.py            Sandbox / SandboxConfig: the Supervisor(sandbox=...) hook, which confinements
                       are applied and required, limits, paths
    exec.py            the launcher run in the plugin's process: applies everything, then execs the plugin
    rlimits.py         memory (RLIMIT_DATA), CPU, files, processes, file size, no core; no_new_privs
    namespaces.py      uid 65534, user + network namespaces
    private_mounts.py  a root launcher's private mount namespace: needed paths reachable by the plugin's uid
    landlock.py        filesystem allow-list, no TCP, signals/abstract sockets scoped (ctypes syscalls)
    seccomp_profile.py the syscall deny-list (libseccomp via pyseccomp)
    seccomp_notify.py  seccomp user notification: the kernel ABI, handing the listener to the core
    doctor.py          what the kernel offers, what a running plugin has

This package's __init__ imports nothing: the launcher must start without any thread (importing gRPC
starts one, and a multi-threaded process cannot enter a user namespace).
"""
