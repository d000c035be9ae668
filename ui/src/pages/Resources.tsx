import { PageHeader } from "../components/common";

export default function Resources() {
  return <PageHeader title="Resources (not built yet)" />;
}
