import { PageHeader } from "../components/common";

export default function DataPlanes() {
  return <PageHeader title="DataPlanes (not built yet)" />;
}
