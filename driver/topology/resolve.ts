/**
 * Resolution: for each PCI function of the live hierarchy, the requester ID it presents, the
 * DMA alias the IOMMU sees (seed 002), the endpoint ID through whichever topology source
 * applies, and its isolation group.
 *
 * Renumbering (seed 000): firmware tables name devices by hand-off bus numbers, while ATTACH
 * uses the OS's current numbering ("the endpoint ID passed in an ATTACH request corresponds to
 * PCI segment and RID of PCI devices at the time of the request"). So a device is matched
 * against the tables through its bus-number-free path (root bus + devfn path, as VT-d does):
 * the path gives its hand-off number, the hand-off number picks the rule, and the rule's
 * offset (endpoint_start − bdf_start) is applied to the current requester ID by default.
 *
 * @module
 */

import type { DescriptionSource, PciRangeRule, TopologyDescription } from "./description.ts";
import { hex } from "../../util/hex.ts";
import { TopologyError } from "./errors.ts";
import { formatBdf, type PciDeviceType, type PciNode, type PciTree } from "./pci_tree.ts";

/** One row of the resolved table. */
export interface ResolvedDevice {
  /** Current address `SSSS:BB:DD.F`. */
  device: string;
  /** Device type. */
  type: PciDeviceType;
  /** Bus-number-free path key (root bus + devfn path). */
  path: string;
  /** Requester ID the function presents (current numbering). */
  requesterId: number;
  /** Requester ID the IOMMU sees after aliasing (current numbering). */
  alias: number;
  /** The alias as `SSSS:BB:DD.F`. */
  aliasDevice: string;
  /** The alias in hand-off numbering, which the firmware tables were matched with. */
  handoffAlias: number;
  /** Endpoint ID for ATTACH, or `null` when not translated (see `note`). */
  endpointId: number | null;
  /** The IOMMU that translates the device, or `null`. */
  iommu: string | null;
  /** The topology source of the matching rule, or `null`. */
  source: DescriptionSource | null;
  /** Isolation group number (index into {@link isolationGroups}), or `null` when untranslated. */
  group: number | null;
  /** Why there is no endpoint ID, or what was unusual. */
  note?: string;
}

/** An MMIO endpoint of the description. */
export interface ResolvedMmio {
  /** Base address of the endpoint's registers. */
  address: bigint;
  /** Endpoint ID. */
  endpointId: number;
  /** The IOMMU. */
  iommu: string;
  /** The source. */
  source: DescriptionSource;
  /** Device-tree path when known. */
  path?: string;
}

/** The resolved topology. */
export interface TopologyTable {
  /** One row per PCI function, sorted by address. */
  rows: ResolvedDevice[];
  /** MMIO endpoints, in description order. */
  mmio: ResolvedMmio[];
}

/** Options of {@link resolveTopology}. */
export interface ResolveOptions {
  /**
   * The hierarchy as firmware handed it off, when the OS has renumbered buses since. Devices
   * are matched to it by path. Default: the current tree (no renumbering).
   */
  handoff?: PciTree;
  /**
   * Which requester ID the rule's offset is applied to: `"current"` (default; what ATTACH uses
   * per seed 000) or `"handoff"` (the ID the table literally assigns).
   */
  numbering?: "current" | "handoff";
}

/** Resolves one device of `tree` (for example a hot-added one). Its `group` is `null`. */
export function resolveDevice(
  tree: PciTree,
  description: TopologyDescription,
  options: ResolveOptions & { device: string },
): ResolvedDevice {
  const node = tree.get(options.device);
  if (node === undefined) {
    throw new TopologyError("resolve", "not-found", `no PCI device ${options.device} in the tree`);
  }
  return resolveNode(tree, description, node, options);
}

function resolveNode(
  tree: PciTree,
  description: TopologyDescription,
  node: PciNode,
  options: ResolveOptions,
): ResolvedDevice {
  const handoff = options.handoff ?? tree;
  const alias = tree.dmaAlias(node);
  const row: ResolvedDevice = {
    device: node.bdf,
    type: node.type,
    path: tree.pathKey(node),
    requesterId: node.rid,
    alias: alias.rid,
    aliasDevice: formatBdf(node.segment, alias.bus, alias.devfn),
    handoffAlias: alias.rid,
    endpointId: null,
    iommu: null,
    source: null,
    group: null,
  };
  const handoffBus = handoff.busNumber(alias.busKey);
  if (handoffBus === undefined) {
    row.note = "alias bus did not exist at hand-off; matched with its current number";
  } else {
    row.handoffAlias = (handoffBus << 8) | alias.devfn;
  }
  for (const iommu of description.iommus) {
    if (iommu.pci === undefined || iommu.pci.segment !== node.segment) continue;
    const self = handoff.find(iommu.pci.segment, iommu.pci.bdf >> 8, iommu.pci.bdf & 0xff);
    const isSelf = self !== undefined
      ? handoff.pathKey(self) === row.path
      : iommu.pci.bdf === handoffRid(handoff, tree, node);
    if (isSelf) {
      row.iommu = iommu.id;
      row.note = "the IOMMU itself: never translated";
      return row;
    }
  }
  const rule = description.pciRanges.find((candidate) =>
    matches(candidate, node.segment, row.handoffAlias)
  );
  if (rule === undefined) {
    row.note ??= "no topology rule covers this requester ID";
    return row;
  }
  const basis = options.numbering === "handoff" ? row.handoffAlias : row.alias;
  const endpointId = (node.segment - rule.segmentStart) * 0x10000 + (basis & rule.mask) -
    rule.bdfStart + rule.endpointStart;
  row.iommu = rule.iommu;
  row.source = rule.source;
  if (endpointId < 0 || endpointId > 0xffff_ffff) {
    row.note = `endpoint ID ${endpointId < 0 ? "-" : ""}${
      hex(Math.abs(endpointId))
    } is outside 32 bits after renumbering`;
    return row;
  }
  row.endpointId = endpointId;
  return row;
}

function handoffRid(handoff: PciTree, tree: PciTree, node: PciNode): number {
  const bus = handoff.busNumber(tree.busKey(node.segment, node.bus)) ?? node.bus;
  return (bus << 8) | node.devfn;
}

function matches(rule: PciRangeRule, segment: number, rid: number): boolean {
  const masked = rid & rule.mask;
  return segment >= rule.segmentStart && segment <= rule.segmentEnd && masked >= rule.bdfStart &&
    masked <= rule.bdfEnd;
}

/**
 * Resolves every function of `tree` through `description` and assigns isolation groups.
 *
 * @example
 * ```ts
 * import { PciTree, resolveTopology } from "@viommu/viommu";
 * const tree = new PciTree([{ segment: 0, bus: 0, devfn: 0x18, type: "endpoint" }]);
 * const table = resolveTopology(tree, {
 *   iommus: [{ id: "viommu" }],
 *   pciRanges: [{
 *     source: "viot", segmentStart: 0, segmentEnd: 0, bdfStart: 0, bdfEnd: 0xffff,
 *     mask: 0xffff, endpointStart: 0, iommu: "viommu",
 *   }],
 *   mmioEndpoints: [],
 * });
 * console.assert(table.rows[0].endpointId === 0x18);
 * ```
 */
export function resolveTopology(
  tree: PciTree,
  description: TopologyDescription,
  options: ResolveOptions = {},
): TopologyTable {
  const rows = tree.devices.map((node) => resolveNode(tree, description, node, options));
  assignGroups(tree, rows);
  return {
    rows,
    mmio: description.mmioEndpoints.map((rule) => {
      const out: ResolvedMmio = {
        address: rule.address,
        endpointId: rule.endpointId,
        iommu: rule.iommu,
        source: rule.source,
      };
      if (rule.path !== undefined) out.path = rule.path;
      return out;
    }),
  };
}

/**
 * Devices that cannot be isolated from each other share a group: the same alias (seed 002),
 * the same endpoint ID on the same IOMMU, or a device and the PCIe-to-PCI or PCI bridge that
 * took over its requester ID (Linux groups those too).
 */
function assignGroups(tree: PciTree, rows: ResolvedDevice[]): void {
  const parent = rows.map((_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i]];
    return i;
  };
  const union = (a: number, b: number): void => {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent[Math.max(ra, rb)] = Math.min(ra, rb);
  };
  const byKey = new Map<string, number>();
  const byDevice = new Map(rows.map((row, i) => [row.device, i]));
  const join = (key: string, i: number): void => {
    const other = byKey.get(key);
    if (other === undefined) byKey.set(key, i);
    else union(other, i);
  };
  rows.forEach((row, i) => {
    if (row.endpointId === null) return;
    join(`ep ${row.iommu} ${row.endpointId}`, i);
    join(`alias ${row.device.slice(0, 4)} ${row.alias}`, i);
    const node = tree.get(row.device)!;
    for (const bridge of tree.dmaAlias(node).via) {
      const j = byDevice.get(bridge.bdf);
      if (j !== undefined && rows[j].endpointId !== null && rows[j].iommu === row.iommu) {
        union(i, j);
      }
    }
  });
  const numbers = new Map<number, number>();
  rows.forEach((row, i) => {
    if (row.endpointId === null) return;
    const root = find(i);
    if (!numbers.has(root)) numbers.set(root, numbers.size);
    row.group = numbers.get(root)!;
  });
}

/** An isolation group: devices that must share a domain. */
export interface IsolationGroup {
  /** Group number, as in {@link ResolvedDevice.group}. */
  id: number;
  /** The IOMMU all members are behind. */
  iommu: string;
  /** Member devices, `SSSS:BB:DD.F`, sorted. */
  devices: string[];
  /** Distinct endpoint IDs of the members, ascending: attach all of them to one domain. */
  endpointIds: number[];
}

/**
 * The isolation groups of a resolved table, by group number. Attaching one member to a domain
 * must attach them all (or be refused naming the group).
 */
export function isolationGroups(table: TopologyTable): IsolationGroup[] {
  const groups: IsolationGroup[] = [];
  for (const row of table.rows) {
    if (row.group === null || row.endpointId === null || row.iommu === null) continue;
    let group = groups[row.group];
    if (group === undefined) {
      group = groups[row.group] = { id: row.group, iommu: row.iommu, devices: [], endpointIds: [] };
    }
    group.devices.push(row.device);
    if (!group.endpointIds.includes(row.endpointId)) group.endpointIds.push(row.endpointId);
  }
  for (const group of groups) group.endpointIds.sort((a, b) => a - b);
  return groups;
}

/** The isolation group of `device` (`SSSS:BB:DD.F`), or `undefined` if it is untranslated. */
export function groupOf(table: TopologyTable, device: string): IsolationGroup | undefined {
  const row = table.rows.find((candidate) => candidate.device === device);
  if (row === undefined || row.group === null) return undefined;
  return isolationGroups(table)[row.group];
}
