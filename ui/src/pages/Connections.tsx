import { PageHeader } from "../components/common";

export default function Connections() {
  return <PageHeader title="Connections (not built yet)" />;
}
