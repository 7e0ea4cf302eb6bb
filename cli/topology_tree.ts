/**
 * `viommu topology --tree`: the PCI hierarchy drawn as `lspci -t` draws it (`-[0000:00]-+-00.0`,
 * `+-`/`\-` branches, a bridge as `1c.0-[01]`), one function per line with what the IOMMU makes
 * of it: its type, endpoint ID, DMA alias and isolation group, named as in the table and the
 * JSON. MMIO endpoints follow the tree.
 *
 * @module
 */

import { BRIDGE_TYPES, type PciNode } from "../driver/topology/pci_tree.ts";
import type { ResolvedDevice } from "../driver/topology/resolve.ts";
import { hex, hexDigits } from "../util/hex.ts";
import type { Painter } from "./format.ts";
import { idText, mmioLine, type TopologyReport } from "./topology.ts";

/** `DD.F`, as lspci names a function on its bus. */
function slot(node: PciNode): string {
  return `${hexDigits(node.devfn >> 3, 2)}.${node.devfn & 7}`;
}

/** What the IOMMU makes of one function, for the end of its line. */
function describe(row: ResolvedDevice | undefined, painter: Painter): string {
  if (row === undefined) return "";
  const fields = [
    row.type,
    `endpointId ${idText(row.endpointId)}`,
    `alias ${hex(row.alias)}`,
    `group ${row.group === null ? "-" : row.group}`,
  ];
  const note = row.note === undefined ? "" : "  " + painter.paint("dim", row.note);
  return fields.join("  ") + note;
}

/** The tree of `report` for people. */
export function formatTopologyTree(report: TopologyReport, painter: Painter): string {
  const rows = new Map(report.table.rows.map((row) => [row.device, row]));
  const children = new Map<PciNode | null, PciNode[]>();
  for (const node of report.tree.devices) {
    const list = children.get(node.parent) ?? [];
    list.push(node);
    children.set(node.parent, list);
  }
  const lines: string[] = [];
  /** Draws `nodes` (siblings): the first line after `first`, the others after `rest`. */
  const draw = (nodes: readonly PciNode[], first: string, rest: string): void => {
    nodes.forEach((node, i) => {
      const last = i === nodes.length - 1;
      const bus = BRIDGE_TYPES.has(node.type) ? `-[${hexDigits(node.secondaryBus!, 2)}]` : "";
      const label = `${slot(node)}${bus}`;
      lines.push(
        `${i === 0 ? first : rest}${last ? "\\-" : "+-"}${label}  ${
          describe(rows.get(node.bdf), painter)
        }`,
      );
      const below = children.get(node) ?? [];
      if (below.length > 0) {
        const indent = rest + (last ? "  " : "| ") + " ".repeat(label.length - 1);
        draw(below, indent, indent);
      }
    });
  };
  // One drawing per root bus, as lspci does: -[SSSS:BB]-
  const roots = children.get(null) ?? [];
  const buses = [...new Set(roots.map((n) => `${hexDigits(n.segment, 4)}:${hexDigits(n.bus, 2)}`))];
  for (const bus of buses) {
    const head = `-[${bus}]-`;
    draw(
      roots.filter((n) => `${hexDigits(n.segment, 4)}:${hexDigits(n.bus, 2)}` === bus),
      head,
      " ".repeat(head.length),
    );
  }
  for (const m of report.table.mmio) lines.push(mmioLine(m));
  return lines.map((line) => line.trimEnd() + "\n").join("");
}

/** One function of {@link topologyTreeJson}: its place, what the IOMMU makes of it, its children. */
export interface TopologyTreeNode {
  /** `SSSS:BB:DD.F`, as in the table's `device`. */
  device: string;
  /** The secondary bus of a bridge, else null. */
  secondaryBus: number | null;
  /** The resolved row's `type`, `endpointId`, `alias` and `group` (null when not resolved). */
  type: string | null;
  endpointId: number | null;
  alias: number | null;
  group: number | null;
  /** The functions below a bridge, in bus order. */
  children: TopologyTreeNode[];
}

/** The tree of `report` for machines: the same hierarchy as the drawing, nested, one root list. */
export function topologyTreeJson(report: TopologyReport): TopologyTreeNode[] {
  const rows = new Map(report.table.rows.map((row) => [row.device, row]));
  const children = new Map<PciNode | null, PciNode[]>();
  for (const node of report.tree.devices) {
    const list = children.get(node.parent) ?? [];
    list.push(node);
    children.set(node.parent, list);
  }
  const build = (node: PciNode): TopologyTreeNode => {
    const row = rows.get(node.bdf);
    return {
      device: node.bdf,
      secondaryBus: BRIDGE_TYPES.has(node.type) ? node.secondaryBus ?? null : null,
      type: row?.type ?? null,
      endpointId: row?.endpointId ?? null,
      alias: row?.alias ?? null,
      group: row?.group ?? null,
      children: (children.get(node) ?? []).map(build),
    };
  };
  return (children.get(null) ?? []).map(build);
}
