/**
 * Reads the live topology of a Linux system: the PCI hierarchy from `/sys/bus/pci/devices`
 * (each function's `config` file) and the ACPI VIOT from `/sys/firmware/acpi/tables/VIOT`.
 * The parsing itself is the pure code in `driver/topology/`; this file only reads bytes.
 * Needs `--allow-all`: Deno 2.9.6 opens `/sys` only with every permission granted (and root
 * to see PCI Express capabilities past config byte 64).
 *
 * @example
 * ```ts ignore
 * import { readSysfsTopology } from "@viommu/viommu/host";
 *
 * const { table } = await readSysfsTopology(); // as root, with --allow-all
 * for (const row of table.rows) console.log(row.device, row.endpointId);
 * ```
 *
 * @module
 */

import { describeViot } from "../driver/topology/description.ts";
import {
  parseBdf,
  type PciDevice,
  pciDeviceFromConfig,
  PciTree,
} from "../driver/topology/pci_tree.ts";
import { resolveTopology, type TopologyTable } from "../driver/topology/resolve.ts";
import { parseViot, type Viot } from "../driver/topology/viot.ts";
import { fileError } from "./sysfs_pci.ts";

/** Options of the sysfs readers. */
export interface SysfsTopologyOptions {
  /** The sysfs mount point. Default `/sys`; tests point it at a fake tree. */
  sysfs?: string;
}

/**
 * Reads every PCI function under `<sysfs>/bus/pci/devices` into a {@link PciTree}. Throws
 * HostPermissionError (naming the path and the flag) when Deno or the kernel refuses a read.
 */
export async function readSysfsPciTree(options: SysfsTopologyOptions = {}): Promise<PciTree> {
  const folder = `${options.sysfs ?? "/sys"}/bus/pci/devices`;
  const devices: PciDevice[] = [];
  let path = folder;
  try {
    for await (const entry of Deno.readDir(folder)) {
      let address;
      try {
        address = parseBdf(entry.name);
      } catch {
        continue; // Not a PCI address: ignore.
      }
      path = `${folder}/${entry.name}/config`;
      devices.push(pciDeviceFromConfig(address, await Deno.readFile(path)));
    }
  } catch (error) {
    throw fileError(error, path, "read");
  }
  return new PciTree(devices);
}

/**
 * Reads and parses `<sysfs>/firmware/acpi/tables/VIOT`; `null` when the system has none. Throws
 * HostPermissionError when Deno or the kernel refuses the read.
 */
export async function readSysfsViot(options: SysfsTopologyOptions = {}): Promise<Viot | null> {
  const path = `${options.sysfs ?? "/sys"}/firmware/acpi/tables/VIOT`;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw fileError(error, path, "read");
  }
  return parseViot(bytes);
}

/** The live hierarchy, its VIOT (if any) and the resolved table. */
export interface SysfsTopology {
  /** The PCI hierarchy. */
  tree: PciTree;
  /** The VIOT, or `null`. */
  viot: Viot | null;
  /** Every function resolved through the VIOT (no endpoint IDs without one). */
  table: TopologyTable;
}

/**
 * Reads the hierarchy and the VIOT and resolves every function. Linux normally keeps the
 * firmware's bus numbers, so the current tree doubles as the hand-off tree here.
 */
export async function readSysfsTopology(
  options: SysfsTopologyOptions = {},
): Promise<SysfsTopology> {
  const tree = await readSysfsPciTree(options);
  const viot = await readSysfsViot(options);
  const description = viot === null
    ? { iommus: [], pciRanges: [], mmioEndpoints: [] }
    : describeViot(viot);
  return { tree, viot, table: resolveTopology(tree, description) };
}
