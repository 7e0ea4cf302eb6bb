/**
 * What a guest boots with besides QEMU's fixed arguments: which kernel (6.1 without a
 * virtio-iommu driver, 6.12 with Linux's as modules), who drives the virtio-iommu (our
 * userspace driver, or Linux's with VFIO), the shell lines that prepare the guest for that
 * choice, and the CPU model 6.12 needs under TCG.
 *
 * @module
 */

import { GUEST_MODULES_DIR } from "./initramfs.ts";

/**
 * Which guest kernel to boot: `"6.1"` is bookworm's cloud kernel (no virtio-iommu driver;
 * `.cache/guest/vmlinuz-*` or `$VIOMMU_VMLINUZ`), `"6.12"` bookworm-backports' cloud kernel
 * with Linux's virtio-iommu and VFIO as modules (`.cache/guest/6.12/`, or
 * `$VIOMMU_KERNEL_6_12_DIR` holding `vmlinuz-*` and `modules/*.ko`).
 */
export type GuestKernel = "6.1" | "6.12";

/** Every {@link GuestKernel}, for argument checking. */
export const GUEST_KERNELS: readonly GuestKernel[] = ["6.1", "6.12"];

/**
 * Who drives the virtio-iommu in the guest: `"userspace"` (our driver; on 6.12 the built-in
 * virtio-pci is unbound from the device first) or `"linux"` (6.12 only: Linux's virtio-iommu
 * and VFIO modules are loaded before the command runs).
 */
export type IommuDriverChoice = "userspace" | "linux";

/** One module `insmod` loads for the `"linux"` choice, with its parameters. */
export interface GuestModule {
  /** File name in the modules folder. */
  file: string;
  /** Module parameters passed to insmod. */
  params: string[];
}

/**
 * The modules Linux's virtio-iommu and VFIO type1 need, in load order (there is no
 * modules.dep, so busybox insmod loads them one by one). `allow_unsafe_interrupts=1`: without
 * interrupt remapping in the guest, VFIO_SET_IOMMU fails with EPERM otherwise.
 */
export const LINUX_IOMMU_MODULES: readonly GuestModule[] = [
  { file: "virtio-iommu.ko", params: [] },
  { file: "irqbypass.ko", params: [] },
  { file: "vfio.ko", params: [] },
  { file: "vfio_iommu_type1.ko", params: ["allow_unsafe_interrupts=1"] },
  { file: "vfio-pci-core.ko", params: [] },
  { file: "vfio-pci.ko", params: [] },
];

/**
 * The modules a 6.1 guest loads so that a PCI function's INTx reaches userspace through
 * `/dev/uioN` (uio_pci_generic); from `.cache/guest/6.1/modules/`. Without them the guest
 * boots anyway and the driver polls.
 */
export const UIO_MODULES: readonly GuestModule[] = [
  { file: "uio.ko", params: [] },
  { file: "uio_pci_generic.ko", params: [] },
];

/**
 * The CPU model for 6.12 guests. Without CX16, SLUB does not use `cmpxchg16b`: under QEMU
 * 7.2's TCG, 6.12's `this_cpu_try_cmpxchg128` (cmpxchg16b with a %gs prefix, its flags
 * consumed directly by a jump) came back with garbage EFLAGS in about half of the boots (double
 * fault in kmem_cache_alloc during early boot, EFLAGS holding RAX's bits); with `-cx16`, 0 in 8.
 */
export const CPU_6_12 = "max,-cx16";

/** Exit code `/cmd` returns when the setup lines (module loading, unbinding) failed. */
export const SETUP_FAILED_CODE = 90;

/**
 * Returns the shell lines that prepare the guest before the command: for 6.12 with our driver,
 * unbind the built-in virtio-pci from every virtio-iommu (1af4:1057); with Linux's driver,
 * insmod {@link LINUX_IOMMU_MODULES}. For 6.1, where no kernel driver exists, insmod
 * {@link UIO_MODULES} when `withModules` (they were installed); the command binds devices.
 */
export function guestSetupScript(
  kernel: GuestKernel,
  driver: IommuDriverChoice,
  withModules = true,
): string[] {
  if (driver === "linux") {
    if (kernel !== "6.12") {
      throw new TypeError(
        `Cannot use Linux's virtio-iommu driver on kernel ${kernel}: only 6.12 has it`,
      );
    }
    return LINUX_IOMMU_MODULES.map(insmodLine);
  }
  if (kernel === "6.1") return withModules ? UIO_MODULES.map(insmodLine) : [];
  return [
    "for d in /sys/bus/pci/devices/*; do",
    '  if [ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1057 ] && [ -e $d/driver ]; then',
    '    echo "${d##*/}" > $d/driver/unbind || ' +
    `{ echo "guest setup: cannot unbind \${d##*/}" >&2; exit ${SETUP_FAILED_CODE}; }`,
    "  fi",
    "done",
  ];
}

/** The shell line that loads `m` from the initramfs, or ends the run with the setup code. */
function insmodLine(m: GuestModule): string {
  return `insmod ${GUEST_MODULES_DIR}/${m.file}${m.params.map((p) => " " + p).join("")} || ` +
    `{ echo "guest setup: insmod ${m.file} failed" >&2; exit ${SETUP_FAILED_CODE}; }`;
}
