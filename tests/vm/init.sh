#!/bin/sh
# PID 1 of the GPIO test VM. The host's root file system is the guest's root,
# read only; this mounts what the kernel gives (proc, sys, devices, configfs),
# scratch space (TMPDIR), and the host's output directory, then runs the program named
# on the kernel command line. When it returns, init exits, the kernel panics
# and reboots (panic=-1) and QEMU, started with -no-reboot, ends.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t configfs configfs /sys/kernel/config
mount -t tmpfs -o mode=755 run /run
# Scratch space under /run, not over /tmp: the checkout under test may live
# in the host's /tmp, and a tmpfs there would hide it.
mkdir -p /run/out /run/scratch
chmod 1777 /run/scratch
mount -t 9p -o trans=virtio,version=9p2000.L out /run/out
cd /run/scratch || exit 1
HOME=/root
LANG=C.UTF-8
TMPDIR=/run/scratch
export HOME LANG TMPDIR
"$@" >/run/out/guest.log 2>&1
echo "$?" >/run/out/exit-status
sync
umount /run/out
